"""Video search: where in a video does this picture (frame mode) or this person (face mode) appear.

reader (+ decode) -> cache -> frames | faces -> results; `rvs.video.api` is the entry point.
"""
