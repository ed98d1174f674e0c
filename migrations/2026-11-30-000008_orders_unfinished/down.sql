DROP INDEX orders_unfinished_idx;
