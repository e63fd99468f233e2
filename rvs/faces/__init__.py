"""Image -> faces -> embeddings: MTCNN detection (`detect`), five-point alignment (`warp`), which
faces may be named (`quality`), the embedders (`embedders`: FaceNet, SFace, their fusion; `embed`
builds the configured one), and the recipe that keys every cache of them (`recipe`).
"""
