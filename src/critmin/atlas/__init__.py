"""The reference atlas: definitions and data tables built from public sources."""

from critmin.atlas.load import bundled_atlas_path, load_atlas, read_bloc_file
from critmin.atlas.model import Atlas
from critmin.atlas.schema import STAGES, table_schemas

__all__ = ["STAGES", "Atlas", "bundled_atlas_path", "load_atlas", "read_bloc_file", "table_schemas"]
