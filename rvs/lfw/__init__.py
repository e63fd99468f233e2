"""The LFW dataset: where it lives and its protocol lists (`dataset`: pairs.txt, View 1 people),
and fetching it onto a fresh machine (`download`). The evaluation, the starter gallery and the
training package read it from here.
"""
