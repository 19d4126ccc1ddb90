"""Implicit-feedback AutoRec: playlists (Melon) and positive-only MovieLens, ranked top-N."""
