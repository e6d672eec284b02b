"""The offline feature platform: the Parquet store, point-in-time joins and
the jobs that move data between offline and online (materialization)."""
