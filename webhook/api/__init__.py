"""HTTP APIs: the open-data API anyone may read (`public`) and, beside it, the officials' API."""
