"""The web dashboard and its JSON API (`python -m dashboard`): live candles from `bars_1m`, past
days from the warehouse, the batch's days and quality verdicts, and the streamer's health."""
