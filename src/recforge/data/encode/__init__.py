"""Encoding raw tables for the models: the fitted preprocessor, splits and negative sampling."""
