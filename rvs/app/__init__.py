"""The app on top of the pipeline: `startup` (which gallery to serve), `service` (one engine,
searches in), `answers` (what the page shows), `draw` (annotated photos, plots), `serving`
(limits and guards against hostile clients and long jobs). app.py wires them into Gradio.
"""
