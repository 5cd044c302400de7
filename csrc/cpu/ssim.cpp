// placeholder: kernels to come
