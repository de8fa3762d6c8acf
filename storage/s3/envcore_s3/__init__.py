"""envcore-s3: the store on S3 (``METAFLOW_DEFAULT_DATASTORE=s3``)."""
