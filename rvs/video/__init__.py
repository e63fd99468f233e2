"""Video search: where in a video does this picture (frame mode) or this person (face mode) appear.

info (the video's facts) -> reader (+ decode) -> cache -> frames | faces -> results; `rvs.video.api`
is the entry point.
"""
