"""Unity Catalog: the metastore that every workspace of the devstack shares."""
