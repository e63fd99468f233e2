"""Faces -> gallery -> results.

Building: `photos` (folder or URI list) -> `embedding` (detect + embed, or `distributed` on Ray
Data) -> `build` (a saved `store.FaceIndex`, incremental updates, removal) -> `calibrate` (who
may be named). Searching: `search` (image -> faces -> nearest gallery faces over one of the
`backends`) -> `identify` (a calibrated name, or "not in this gallery"). `starter` builds the
first-start gallery, `thumbnails` packs face thumbnails for a published gallery.
"""
