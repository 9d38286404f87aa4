"""sdk.quant"""
