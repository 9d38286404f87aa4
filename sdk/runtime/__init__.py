"""sdk.runtime"""
