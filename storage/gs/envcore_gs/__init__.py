"""envcore store on Google Cloud Storage (gcsfs), with the service's generation preconditions"""
