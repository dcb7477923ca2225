"""Run the collapse detector worker: ``python -m streams.collapse_detector``."""

from streams.collapse_detector.app import main

main()
