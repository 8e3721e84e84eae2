/* fixture: b.h */
