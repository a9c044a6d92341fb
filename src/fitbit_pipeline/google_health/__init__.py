"""Google Health API v4: the data types read into the activity tables, the reader, and the collector."""
