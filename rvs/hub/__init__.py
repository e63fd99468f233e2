"""Hugging Face Hub: a published gallery is an artifact folder (`artifacts`: layout and
verification), pulled or found locally by `client.resolve_artifacts`, written and pushed by
`publish`, with its model card (`modelcard`), example inputs (`examples`) and face thumbnails
(`rvs.gallery.thumbnails`).
"""
