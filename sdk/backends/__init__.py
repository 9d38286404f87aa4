"""sdk.backends"""
