//! Binary-protocol values: COM_STMT_EXECUTE parameter blocks (NULL bitmap, types, values).
