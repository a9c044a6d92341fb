"""Fitabase CSV exports: the declared files, the listing as deliveries, the reader."""
