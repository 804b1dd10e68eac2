"""Reading instruction pools and writing selected subsets in the container ``out`` names.

>>> from kmq.data import read_pool, write_subset
>>> pool = read_pool("pool.jsonl")                     # doctest: +SKIP
>>> write_subset(pool, [3, 0, 7], "subset.jsonl")      # doctest: +SKIP
>>> write_subset(pool, [3, 0, 7], "sft.jsonl", out_format="messages")   # doctest: +SKIP
>>> pool = read_pool([{"instruction": "Add 2 and 3.", "output": "5"}])   # records in memory
>>> pool.source, pool.container
('<list of 1 records>', 'memory')
"""

from kmq.data.convert import OUT_FORMATS, conversion_stats, convert_subset
from kmq.data.fields import FieldMap
from kmq.data.formats import FORMATS
from kmq.data.io import in_memory, load_pool, read_pool, read_records, source_container
from kmq.data.pool import VIEWS, Pool
from kmq.data.write import OUTPUT_CONTAINERS, check_output_path, output_container, write_subset

__all__ = [
    "FORMATS",
    "OUTPUT_CONTAINERS",
    "OUT_FORMATS",
    "VIEWS",
    "FieldMap",
    "Pool",
    "check_output_path",
    "conversion_stats",
    "convert_subset",
    "in_memory",
    "load_pool",
    "output_container",
    "read_pool",
    "read_records",
    "source_container",
    "write_subset",
]
