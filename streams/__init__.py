"""The wire: topic declarations, event codecs and stream processors."""
