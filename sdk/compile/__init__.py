"""sdk.compile"""
