"""The three-party protocol of Fig. 2: ``retrieval`` (data owner, cloud server, query user and the
server's store) and ``imagefiles`` (encrypted images as lossless files). The server side never
sees a key or a plaintext."""
