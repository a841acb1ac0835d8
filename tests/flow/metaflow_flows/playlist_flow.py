"""A flow written for Metaflow's local runtime, untouched but for the test's import swap."""

from metaflow import FlowSpec, JSONType, Parameter, card, catch, conda_base, current, retry, step


@conda_base(python="3.11", libraries={"pandas": "2.1"})
class PlaylistFlow(FlowSpec):
    """Pick songs per genre and a bonus track, then merge."""

    genres = Parameter("genres", type=JSONType, default='["rock", "jazz", "pop"]', help="genres")
    top_k = Parameter("top_k", default=2, help="songs per genre")

    @card
    @step
    def start(self):
        self.catalog = {
            "rock": ["r1", "r2", "r3"],
            "jazz": ["j1", "j2"],
            "pop": ["p1", "p2", "p3", "p4"],
        }
        self.next(self.bonus, self.pick_genres)

    @step
    def bonus(self):
        self.bonus_track = sorted(self.catalog["pop"])[-1]
        self.next(self.join)

    @step
    def pick_genres(self):
        self.next(self.pick, foreach="genres")

    @retry(times=1, minutes_between_retries=0)
    @step
    def pick(self):
        self.genre = self.input
        self.songs = self.catalog[self.genre][: self.top_k]
        self.next(self.collect)

    @catch(var="collect_error")
    @step
    def collect(self, inputs):
        self.playlist = {inp.genre: inp.songs for inp in inputs}
        self.merge_artifacts(inputs, include=["catalog"])
        self.next(self.join)

    @step
    def join(self, inputs):
        self.playlist = inputs.collect.playlist
        self.bonus_track = inputs.bonus.bonus_track
        self.merge_artifacts(inputs, exclude=["playlist", "bonus_track", "collect_error"])
        self.next(self.end)

    @step
    def end(self):
        print("playlist for run", current.run_id, self.playlist, self.bonus_track)


if __name__ == "__main__":
    PlaylistFlow()
