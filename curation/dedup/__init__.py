"""Near-duplicate removal over clip embeddings, at 25 M-clip scale (`lavie dedup`).

The method is NeMo Curator's semantic deduplication: cluster the clips' CLIP image embeddings with
k-means, then compare clips by cosine similarity only within their cluster. Every stage is Ray
tasks over bounded pieces of the data, so no process ever holds all the embeddings (25 M × 768
float16 is 38 GB):

1. ``plan``: count the embeddings of each manifest part (Parquet footers only) and group the parts
   into units of work of at most ``rows_per_task`` rows (:mod:`curation.dedup.parts`).
2. ``kmeans``: k-means++ on a sample, then mini-batch k-means (Sculley, 2010) whose batches are
   drawn across all units in parallel; ``k`` is the number of embeddings over ``cluster_size``, so
   a cluster fits in one task (:mod:`curation.dedup.kmeans`).
3. ``assign``: each unit writes its rows, labelled with their nearest centroid and sorted by it,
   into the work folder; the driver receives a count per cluster.
4. ``groups``: each task takes a range of whole clusters, reads only those rows (Parquet statistics
   skip the rest), splits a cluster still larger than twice ``cluster_size`` with a local k-means,
   and links clips whose cosine similarity is at or above ``threshold``. In each connected group
   one clip is kept: the highest aesthetic score, then the longest, then the first ``clip_id``
   (:mod:`curation.dedup.groups`).
5. ``write``: each unit writes its parts of the output manifest: the clips that stay, their
   embeddings, and the others as rejects of stage ``dedup`` with ``duplicate_of``
   (:mod:`curation.dedup.run`).
"""
