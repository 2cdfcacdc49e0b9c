"""Files and arrays: MNIST's formats, model files, and each epoch's shuffled, shifted, distorted images."""
