"""Files API (Unity Catalog volumes, registered models' storage) and DBFS 2.0."""
