"""Sparse training path: AutoRec epochs in O(nnz x k) time, never a dense rows x columns matrix.

The dense path reconstructs every (row, column) cell, O(rows x columns x k) per epoch. The masked
loss only reads observed cells, so here

  * the first hidden layer's pre-activation X V is a CSR sparse-dense matmul (SpMM) of the
    training ratings X [rows, columns] with V [columns, k];
  * the decoder is evaluated only at observed (row, column) pairs: a sampled dense-dense product
    (SDDMM) computed in chunks, so no [nnz, k] tensor ever exists whole;
  * the gradients of those two products are SpMMs in closed form (dV = X^T dA; with E the sparse
    matrix of loss gradients at observed cells, dH = E W^T and dW = H^T E); the rest of the graph
    (activations, extra hidden layers) is small and left to the tape.

The loss is exactly the dense masked formulation of `AutoRec.compute_loss`: squared error summed
over observed cells, divided by their count, plus `l2_weight` times the squared kernels.

User activity and item popularity follow power laws, so a few columns hold most observed pairs.
The decoder's logits at the pairs of a block's densest columns (`DENSE_COLUMN_DENSITY`) are
cheaper as bounded row blocks of a dense matmul (GEMM) of those columns followed by a gather; the
other pairs get gathered dots.

Mixed precision (bfloat16 or float16) applies to the decoder's SDDMM gathers, which move most of
its bytes, to extra hidden layers, and to the decoder's GEMM on CPUs that multiply the dtype
natively (`native_matmul`; bfloat16 with AMX: ~3x float32; without, it would be slower than
float32). TensorFlow's CSR kernels accept only float32/float64, so the SpMMs stay float32, as do
variables, the residuals and the loss. float16 trains with Keras' dynamic loss scaling (the
gradients of extra hidden layers are float16).

The SpMMs run on oneDNN's CSR kernel (see `kernels.ONEDNN_SPMM`) when TensorFlow has it.
"""

