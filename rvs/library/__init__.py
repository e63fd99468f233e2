"""A video library: many videos indexed once, then searched like a photo gallery.

"Which of my videos is this person in, and when?" and "where does this picture appear in my
videos?" without decoding anything at query time:

- `indexer`: each video is decoded once at `video_face_fps` (default 2 a second); its faces are
  detected, linked into tracks and embedded once per track chunk (rvs.video.tracks), and each
  sample's frame-mode features (pHash, histogram, ORB keypoints; rvs.video.frames) are stored with
  its shot. Incremental by content hash; a video that cannot be decoded is reported in one line
  and skipped. `python -m rvs videos index FOLDER [--out DIR] [--update] [--ray]`.
- `store`: the folder (`library.json` manifest, per-video arrays, the track vectors of all videos
  in one matrix), written atomically and checked when loaded; no pickle.
- `search`: person mode searches the track vectors with the gallery search backends (exact,
  Annoy, Milvus: `Config.search_backend`), frame mode shortlists samples by pHash and histogram
  and verifies them geometrically. Answers name the video, its time segments on the player's
  clock, the best frame and a decision. `python -m rvs videos search PHOTO [--mode person|frame]`.
"""
