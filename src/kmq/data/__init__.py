"""Reading instruction pools and writing selected subsets back in the input's own format.

>>> from kmq.data import read_pool, write_subset
>>> pool = read_pool("pool.jsonl")                     # doctest: +SKIP
>>> write_subset(pool, [3, 0, 7], "subset.jsonl")      # doctest: +SKIP
"""

from kmq.data.formats import FORMATS
from kmq.data.io import read_pool, write_subset
from kmq.data.pool import VIEWS, Pool

__all__ = ["FORMATS", "VIEWS", "Pool", "read_pool", "write_subset"]
