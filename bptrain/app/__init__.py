"""The application: the command line, its options and configs, plots, images, benchmarks, the web page."""
