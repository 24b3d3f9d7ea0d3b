"""Reading and writing ntuples: the toy generator, expressions, ingestion into the events table."""
