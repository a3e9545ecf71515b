"""Celery tasks: thin functions that take ids, load rows and blobs, call the method (`worker.method`), write
results and update rows. Task modules import torch only inside `worker.method`'s implementation, lazily."""
