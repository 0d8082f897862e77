"""Preloading simulator: viewing sessions x network traces -> the bytes and stalls of each policy."""
