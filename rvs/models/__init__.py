"""Model weights: where FaceNet's weights come from (facenet-pytorch's VGGFace2 release, Sandberg's
CASIA-WebFace graph converted by `tfgraph`, a local or Hub safetensors file) and how they are
verified, converted and centred (`weights`). The face stages (`rvs.faces`) load them from here.
"""
