"""Edge adapters that turn device protocols into reading batches."""
