"""Generated gRPC code for klambda's internal RPC (the .proto files live beside it).

Regenerate with ``python -m klambda.protos.generate``; a test proves the committed code matches.
"""
