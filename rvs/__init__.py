"""rvs: reverse visual search for faces and video.

Data flows one way: image -> faces (detect) -> embeddings (embed) -> index -> results (search).
"""

__version__ = "0.1.0"
