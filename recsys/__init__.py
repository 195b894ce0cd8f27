"""recsys: item catalog, FAISS item index and personalised ranking (front door: `recsys.service`)."""
