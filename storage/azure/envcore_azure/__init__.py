"""envcore-azure: the store on Azure Blob Storage (``METAFLOW_DEFAULT_DATASTORE=azure``)."""
