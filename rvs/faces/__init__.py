"""Image -> faces -> embeddings: MTCNN detection and alignment (`detect`), which faces may be named
(`quality`), InceptionResnetV1 embeddings (`embed`), and the recipe that keys every cache of them
(`recipe`).
"""
