"""Documents: assembled from the input tables, quarantined when unusable, cut into token windows."""
