"""sdk.backends.reference"""
