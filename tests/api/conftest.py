from tests.worker.fake_method import fake_method

__all__ = ["fake_method"]
