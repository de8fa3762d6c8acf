"""envcore store on Azure Blob Storage (adlfs), with the service's ETag conditions"""
