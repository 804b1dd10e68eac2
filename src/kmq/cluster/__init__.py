"""Clustering: embeddings -> labels (n,) and centroids (k, d)."""

from kmq.cluster.choose_k import candidate_ks, choose_k, cosine_silhouette
from kmq.cluster.kmeans import KMeans, assign_chunk, default_n_clusters

__all__ = ["KMeans", "assign_chunk", "candidate_ks", "choose_k", "cosine_silhouette", "default_n_clusters"]
