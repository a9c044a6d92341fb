"""Fitbit account exports ("Global Export Data" JSON and the Takeout CSVs): one participant's export each."""
