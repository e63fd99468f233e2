"""rvs: reverse visual search for faces and video.

Data flows one way: image (imageio) -> faces (faces: detect, align, embed) -> gallery (gallery: build,
store, search, identify) -> results; video search beside it (video), evaluation (eval), publishing
(hub) and the demo (app) on top. Each stage imports only the ones before it (tests/test_layout.py).
"""

__version__ = "0.1.0"
