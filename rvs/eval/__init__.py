"""Evaluation on known answers: `crops` (the shared LFW crop and embedding caches), `metrics`
(verification and retrieval metrics), `protocols` (LFW pairs.txt 10-fold verification, View 1
retrieval and the reference centre). `python -m rvs eval` runs them.
"""
